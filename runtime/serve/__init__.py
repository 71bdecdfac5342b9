"""``edgecnn serve``: the HTTP service (standard library only) around a loaded classifier.

``http`` parses and writes HTTP/1.1, ``service`` turns bodies into JSON documents on a
pool of workers, ``server`` runs the event loop, ``cli`` is the command.
"""
