from llama_ascend.cli import main

raise SystemExit(main())
