"""Applications: the command line, the demo, the queue server, reports."""
