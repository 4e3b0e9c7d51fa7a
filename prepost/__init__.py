"""prepost: pre- and post-maintenance work around Azure Update Manager maintenance windows."""
