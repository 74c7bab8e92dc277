from bootsrv.cli import main

main()
