from nlbkit.cli import main

main()
