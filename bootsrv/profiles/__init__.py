"""Install profiles: data in profiles/ (one TOML file each, plus site.toml shared by all), rendered
through Jinja2 templates in templates/boot/ and templates/answers/.

catalog.py loads and validates the data, render.py renders templates (errors name profile,
template and line), plan.py turns "this machine is due for install" into the URLs, command line
and context the templates need, tftp.py serves rendered files over TFTP, cli.py is `bootsrv profile`.
"""
