"""The Docker Engine API over a unix socket (or TCP with mutual TLS): thin handlers over the
engine."""
