from convoscope.cli import main

raise SystemExit(main())
