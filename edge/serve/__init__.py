"""The HTTP server, feedback store and web page (the ``[serve]`` extra). The runtime core imports nothing from here."""
