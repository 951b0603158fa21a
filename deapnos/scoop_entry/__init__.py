"""The file SCOOP runs (:data:`deapnos.run.ENTRY_FILE`): ``main.py`` in a folder of its own, so that
the folder SCOOP puts first on ``sys.path`` holds no module that could shadow another."""
