from maildaemon.cli import main

main()
