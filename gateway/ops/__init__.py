"""Operations: the access log, the config file watcher, the periodic store/budget checks."""
