from bootsrv.cli.main import main

main()
