"""Services a lab performs on samples sent to it (送样检测): the lab's published services,
requests from quote to result, their files, and the charge they end in."""
