"""Real hypervisor drivers of the compute agent (the fake one is ``agents.compute.fake``).

``libvirt`` is the only module of the project that imports libvirt-python; its siblings
(``domain_xml``, ``image_cache``, ``host``) are pure or use only the standard library and qemu-img.
"""
