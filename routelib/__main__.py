from routelib.cli.app import main

raise SystemExit(main())
