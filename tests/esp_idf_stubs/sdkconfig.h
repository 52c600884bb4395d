/* ESP-IDF generates this file from the project's configuration; here the test gives the
   CONFIG_ values as -D options, one set per chip. */
