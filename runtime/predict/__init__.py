"""``edgecnn predict``: files, folders, patterns and arrays through a model, in batches.

The command (:mod:`.command`) reads its inputs (:mod:`.inputs`, :mod:`.walk`), cuts them
into batches (:mod:`.batches`), classifies them in worker processes (:mod:`.workers`,
:mod:`.lifetime`) and writes the results as they come (:mod:`.output`,
:mod:`.progress_bar`). Nothing here is needed to embed the runtime in an app.
"""
