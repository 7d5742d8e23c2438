"""immray: self-hosted face clustering that speaks Alibaba Cloud IMM's face-clustering API."""

__version__ = "0.1.0"
