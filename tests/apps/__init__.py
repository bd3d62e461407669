"""Applications the zero-code tests run under ``opentelemetry-instrument``, each in a subprocess."""
