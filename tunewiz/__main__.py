from tunewiz.cli import main

raise SystemExit(main())
