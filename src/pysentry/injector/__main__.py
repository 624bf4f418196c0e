from pysentry.injector.main import main

main()
