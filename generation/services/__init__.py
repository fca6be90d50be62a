"""Django-side writes of the generation app (registering image sets made by sampling or patch
extraction). Imports Django; the ML core never imports this package."""
