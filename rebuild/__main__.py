from rebuild.cli import main

raise SystemExit(main())
