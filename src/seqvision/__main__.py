from seqvision.cli import main

raise SystemExit(main())
