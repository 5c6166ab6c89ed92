// Swagger UI for this service's /openapi.json. A file rather than an inline script, so that the
// /docs page's Content-Security-Policy allows scripts from the service itself and nothing else.
window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true});
