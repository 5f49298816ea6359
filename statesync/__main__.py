from statesync.cli import main

main()
