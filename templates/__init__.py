"""Makes templates/ the package bootsrv.data.templates (see pyproject.toml): the data are the *.j2."""
