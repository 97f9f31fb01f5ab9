-- set_line: set one SKU's quantity in a cart, in one atomic step.
-- KEYS[1] the cart (hash sku -> qty), KEYS[2] the product (hash).
-- ARGV[1] sku, ARGV[2] qty, ARGV[3] most distinct SKUs in a cart.
-- Returns {'unknown'}, {'full'}, or {'ok', sku1, qty1, sku2, qty2, ...}.
if redis.call('EXISTS', KEYS[2]) == 0 then
    return {'unknown'}
end
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then
    return {'full'}
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local lines = redis.call('HGETALL', KEYS[1])
table.insert(lines, 1, 'ok')
return lines
