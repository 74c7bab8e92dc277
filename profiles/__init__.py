"""Makes profiles/ the package bootsrv.data.profiles (see pyproject.toml): the data are the *.toml."""
