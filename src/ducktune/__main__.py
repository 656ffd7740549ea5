from ducktune.cli import main

raise SystemExit(main())
