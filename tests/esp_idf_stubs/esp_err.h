/* esp_err.h (ESP-IDF v5.x): error codes and ESP_ERROR_CHECK, which aborts on an error. */
#ifndef ESP_ERR_H
#define ESP_ERR_H

typedef int esp_err_t;

#define ESP_OK 0
#define ESP_FAIL -1

void _esp_error_check_failed(esp_err_t rc, const char *file, int line, const char *function,
                             const char *expression);

#define ESP_ERROR_CHECK(x) do {                                                      \
        esp_err_t err_rc_ = (x);                                                     \
        if (err_rc_ != ESP_OK) _esp_error_check_failed(err_rc_, __FILE__, __LINE__,  \
                                                       __func__, #x);                \
    } while (0)

#endif
