from camserver.cli import main

raise SystemExit(main())
