"""The daemon and what it is made of.

- ``daemon``: lifecycle (config, archive, control socket, scheduler, sd_notify, signals, reload);
- ``commands``: the control socket's command table; ``control``: the socket server;
  ``control_client``: the typed client every CLI command uses;
- ``status`` (with an account's parts in ``status_parts``) / ``replies``: typed reply records
  (``to_json``/``from_json``); ``snapshot`` builds them;
- ``scheduler``: one task per account (intervals, backoff, pause/resume, fetch-now);
  ``account_runtime``: each account's live state and how a cycle's end changes it;
- ``runner``: one fetch cycle within the budgets (cycle slot, host connection or kept session);
- ``budget``: the one owner of concurrency budgets (cycles, connections per host, transfers, memory);
- ``kept_sessions``: IMAP sessions kept between cycles; ``idle``: IDLE supervision;
- ``oneshot``: ``maild fetch`` composed of the same parts; ``memory``: glibc allocator settings
  applied at start by both; ``metrics``, ``sdnotify``.

May import ``maild.fetch``, ``maild.archive``, ``maild.protocols``, ``maild.config``, ``maild.policy`` and
the model; never ``maild.cli``.
"""
