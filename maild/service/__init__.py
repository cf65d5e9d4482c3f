"""The daemon: lifecycle, scheduler, control socket, IDLE supervision, kept sessions, metrics, sd_notify."""
