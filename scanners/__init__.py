"""Collectors: read cloud and host state and turn it into Resource records. They never judge."""
