"""The three jobs (train, batch, stream) and their command line, built only from eventsnn."""
