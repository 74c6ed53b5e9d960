"""Container verbs, one module each; `Engine` methods are their front door."""
