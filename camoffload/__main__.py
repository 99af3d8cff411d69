from camoffload.cli import main

raise SystemExit(main())
