"""One module per `nlbkit` sub-command, each exposing a click command named `command`."""
