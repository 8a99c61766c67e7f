"""What the template's tests and benchmarks share, one module per concern.

- answers: the answer matrix, read from copier.yml (drivers, targets, defaults)
- generation: rendering the template with copier or cookiecutter; template modules by path
- cli: the tools' command lines, as a user types them
- processes: free ports, starting a process, waiting until it is ready, stopping it
- services: a generated service installed and served by gunicorn, and its database
- deploy: a project rendered for a deployment target, and the offline checkers of its files
- fake_postgres: a fake PostgreSQL server, for failures a real one cannot show on demand
- otlp: a fake OpenTelemetry collector (OTLP over HTTP), for the spans a service exports
"""
