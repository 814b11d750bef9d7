"""Project accounts: a PI's grant or cost centre that members charge bookings and service
requests to, with a budget, validity dates and the PI's approval where the PI wants it."""
