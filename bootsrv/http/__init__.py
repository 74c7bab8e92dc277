"""HTTP side of bootsrv: the Flask app factory (app.py), its blueprints (boot.py, api.py), the one
error shape (errors.py) and what it needs of the server (site.py); bootsrv.app.http runs it
under waitress."""
