"""HTTP side of bootsrv: the Flask app factory, its blueprints, and the waitress service."""
