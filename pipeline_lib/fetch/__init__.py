"""Product sources (demo, local, cdse, dhus) behind one interface, and the scene table."""
