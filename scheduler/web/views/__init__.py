"""The HTML pages and their forms. Reads and writes go through `scheduler.api`.
`scheduler.web.views.routes` is the URL map; one module per group of pages serves it."""
