"""The {{ cookiecutter.project_slug }} service: a FastAPI application on PostgreSQL."""
