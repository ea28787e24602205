"""libvirt's own: the real libvirt-python binding and libvirt's ``VIR_*`` numbers.

Neutral ground below both users of them: the libvirt driver needs the real
binding and libvirt's codes, and so does the libvirt-python face
(:mod:`xvirt.compat`), which also serves the numbers to scripts. Neither may
import the other (a driver never imports compat; the face speaks to drivers only
through ``import xvirt``), so both import this package, which imports nothing of
xvirt but its vocabulary (:mod:`xvirt.errors`, :mod:`xvirt.model`).

* :mod:`~xvirt.libvirt_api.binding` loads the real binding, also where
  ``import libvirt`` means the face;
* :mod:`~xvirt.libvirt_api.constants` is libvirt 9.0.0's table of ``VIR_*``
  constants, each number defined once;
* :mod:`~xvirt.libvirt_api.states` maps Xen's states to libvirt's, for the face
  and the exporter.
"""
