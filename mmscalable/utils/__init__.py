# Copyright (c) mmscalable contributors. All rights reserved.
