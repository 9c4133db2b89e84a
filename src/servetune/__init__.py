"""servetune: build, serve, deploy, load-test and tune an image-classification web service."""

__version__ = "0.1.0"
