"""The read-only web dashboard (``[dashboard]``; docs/dashboard.md), served inside the server's Trio process.

Parts: :mod:`.model` (the rules, pure), :mod:`.collector` (samples the server's state and reads the
journal, off the order path), :mod:`.journal_view` (read-only journal queries, in a worker thread),
:mod:`.web` (the Starlette application: GET only, the token), and :mod:`.serve`, with the task
``serve`` starts (:func:`~.serve.serve_dashboard`: the collector and Hypercorn's Trio worker). This file
imports nothing, so that the pure rules load without the web stack.
"""
