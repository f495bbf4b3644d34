"""Running trials: child-process isolation, the sweep, maxbs, the noise run, the store, watch."""
