# Copyright (c) misr_monai contributors. Licensed under the Apache License, Version 2.0.
import sys

from misr_monai.cli import main

sys.exit(main())
