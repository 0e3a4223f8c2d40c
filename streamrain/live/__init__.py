"""Live sessions (`streamrain preview`): a camera, a network stream or a ``lavfi`` graph derained
with bounded latency, shown in the preview window and/or written to a file or re-streamed.

What this adds to the live policy of the Pipeline (drop the oldest waiting frame, never wait):

* Frames are restamped by the wall clock (milliseconds since the first frame): after a reconnection
  the stream's own timestamps restart or jump, and dropped frames must leave gaps, not squeeze time.
  So a file written for ten seconds lasts ten seconds.
* A network stream or camera that stops (EOF, or silent for ``stall_timeout_s``) is reopened with
  back-off (``reconnect_delay_s`` doubling up to ``reconnect_max_delay_s``); a file or ``lavfi``
  graph that ends just ends the session. Each connection is closed before the next is opened.
* Sources that are not live (a file, ``lavfi`` without ``realtime``) are paced to their timestamps,
  as a player would, instead of decoded as fast as possible and mostly dropped.
* Latency is measured per frame from ``Frame.captured_s`` (when it left the decoder; what happened
  before inside a camera or the network cannot be seen from here) to the moment the window showed it,
  or, without a window, to the moment the output took it.
* ``LiveSession.finish()`` (window key q, ``--duration``, a first Ctrl-C) ends the source: what is
  in flight is derained and written and the output is kept. A second Ctrl-C aborts (nothing kept at
  the output).

One job per module: ``options`` (LiveOptions, the live RunOptions defaults), ``capture`` (how a
source is opened), ``source`` (restamping, pacing, reconnecting), ``output`` (window, ``--output``,
r recordings), ``session`` (LiveSession: runs it all, handles Ctrl-C and the window's events),
``window`` (the handle on the window process) and ``_window_process`` (that process, OpenCV only).
"""
